// ansi.js: render a PTY byte stream (already decoded to text) into DOM
// nodes. SGR sequences (ESC [ ... m) become styled spans; every other
// control sequence is dropped; text is inserted with text nodes only, so a
// job's output can never inject HTML. State (the current style and an
// unfinished escape sequence) carries over between chunks.
(function (root) {
  "use strict";

  // The 16 basic colours are CSS classes (style.css); 256-colour and
  // true-colour values are computed here.
  function color256(n) {
    if (n < 16) return null; // use a class
    if (n < 232) {
      n -= 16;
      var steps = [0, 95, 135, 175, 215, 255];
      return "rgb(" + steps[Math.floor(n / 36)] + "," + steps[Math.floor(n / 6) % 6] + "," + steps[n % 6] + ")";
    }
    var g = 8 + (n - 232) * 10;
    return "rgb(" + g + "," + g + "," + g + ")";
  }

  function blankStyle() {
    return { fg: null, bg: null, fgRGB: null, bgRGB: null, bold: false, dim: false, italic: false, underline: false, inverse: false, strike: false };
  }

  // applySGR updates style s with the parameters of one SGR sequence.
  function applySGR(s, params) {
    var p = params === "" ? [0] : params.split(/[;:]/).map(function (x) { return x === "" ? 0 : parseInt(x, 10); });
    for (var i = 0; i < p.length; i++) {
      var c = p[i];
      if (isNaN(c)) continue;
      if (c === 0) { var b = blankStyle(); for (var k in b) s[k] = b[k]; }
      else if (c === 1) s.bold = true;
      else if (c === 2) s.dim = true;
      else if (c === 3) s.italic = true;
      else if (c === 4) s.underline = true;
      else if (c === 7) s.inverse = true;
      else if (c === 9) s.strike = true;
      else if (c === 21 || c === 22) { s.bold = false; s.dim = false; }
      else if (c === 23) s.italic = false;
      else if (c === 24) s.underline = false;
      else if (c === 27) s.inverse = false;
      else if (c === 29) s.strike = false;
      else if (c >= 30 && c <= 37) { s.fg = c - 30; s.fgRGB = null; }
      else if (c === 39) { s.fg = null; s.fgRGB = null; }
      else if (c >= 40 && c <= 47) { s.bg = c - 40; s.bgRGB = null; }
      else if (c === 49) { s.bg = null; s.bgRGB = null; }
      else if (c >= 90 && c <= 97) { s.fg = c - 90 + 8; s.fgRGB = null; }
      else if (c >= 100 && c <= 107) { s.bg = c - 100 + 8; s.bgRGB = null; }
      else if (c === 38 || c === 48) {
        var fg = c === 38, v = null, idx = null;
        if (p[i + 1] === 5 && i + 2 < p.length) {
          var n = p[i + 2] | 0;
          if (n >= 0 && n < 256) { if (n < 16) idx = n; else v = color256(n); }
          i += 2;
        } else if (p[i + 1] === 2 && i + 4 < p.length) {
          var r = p[i + 2] & 255, g = p[i + 3] & 255, bl = p[i + 4] & 255;
          v = "rgb(" + r + "," + g + "," + bl + ")";
          i += 4;
        } else {
          i = p.length; // malformed: ignore the rest
        }
        if (fg) { s.fg = idx; s.fgRGB = v; } else { s.bg = idx; s.bgRGB = v; }
      }
    }
  }

  // Renderer appends to container: one div.line per output line.
  function Renderer(container, opts) {
    this.root = container;
    this.doc = container.ownerDocument;
    this.style = blankStyle();
    this.pending = ""; // an unfinished escape sequence
    this.line = null;
    this.clearLine = false; // a lone CR: the next text overwrites the line
    this.lines = 0;
    this.maxLines = (opts && opts.maxLines) || 20000;
  }

  Renderer.prototype.newLine = function () {
    this.line = this.doc.createElement("div");
    this.line.className = "line";
    this.root.appendChild(this.line);
    this.lines++;
    if (this.lines > this.maxLines && this.root.firstChild) {
      this.root.removeChild(this.root.firstChild);
      this.lines--;
    }
  };

  Renderer.prototype.text = function (t) {
    if (t === "") return;
    if (!this.line) this.newLine();
    if (this.clearLine) {
      while (this.line.firstChild) this.line.removeChild(this.line.firstChild);
      this.clearLine = false;
    }
    var s = this.style, node = this.doc.createTextNode(t);
    var plain = s.fg === null && s.bg === null && !s.fgRGB && !s.bgRGB && !s.bold && !s.dim && !s.italic && !s.underline && !s.inverse && !s.strike;
    if (plain) { this.line.appendChild(node); return; }
    var span = this.doc.createElement("span"), cls = [];
    var fg = s.fg, bg = s.bg, fgRGB = s.fgRGB, bgRGB = s.bgRGB;
    if (s.inverse) {
      cls.push("ansi-inverse");
      var tf = fg, tr = fgRGB; fg = bg; fgRGB = bgRGB; bg = tf; bgRGB = tr;
    }
    if (fg !== null) cls.push("ansi-fg-" + fg);
    if (bg !== null) cls.push("ansi-bg-" + bg);
    if (s.bold) cls.push("ansi-bold");
    if (s.dim) cls.push("ansi-dim");
    if (s.italic) cls.push("ansi-italic");
    if (s.underline) cls.push("ansi-underline");
    if (s.strike) cls.push("ansi-strike");
    span.className = cls.join(" ");
    // CSSOM, not a style attribute: allowed by the page's CSP.
    if (fgRGB) span.style.color = fgRGB;
    if (bgRGB) span.style.backgroundColor = bgRGB;
    span.appendChild(node);
    this.line.appendChild(span);
  };

  // write renders the next chunk of output.
  Renderer.prototype.write = function (chunk) {
    var s = this.pending + chunk, i = 0, start = 0, n = s.length;
    this.pending = "";
    while (i < n) {
      var ch = s.charCodeAt(i);
      if (ch === 0x1b) {
        this.text(s.slice(start, i));
        var end = this.escape(s, i);
        if (end < 0) { this.pending = s.slice(i); return; }
        i = start = end;
        continue;
      }
      if (ch === 10) { // \n
        this.text(s.slice(start, i));
        this.clearLine = false;
        this.newLine();
        start = ++i;
        continue;
      }
      if (ch === 13) { // \r: \r\n is a newline, a lone \r rewinds the line
        this.text(s.slice(start, i));
        if (i + 1 >= n) { this.pending = "\r"; return; }
        if (s.charCodeAt(i + 1) !== 10) this.clearLine = true;
        start = ++i;
        continue;
      }
      if (ch < 32 && ch !== 9) { // other C0 controls (BEL, BS, ...) are dropped
        this.text(s.slice(start, i));
        start = ++i;
        continue;
      }
      i++;
    }
    this.text(s.slice(start, n));
  };

  // escape parses the sequence at s[i] (ESC) and returns the index after it,
  // or -1 when the chunk ends inside it.
  Renderer.prototype.escape = function (s, i) {
    var n = s.length;
    if (i + 1 >= n) return -1;
    var t = s.charAt(i + 1);
    if (t === "[") { // CSI: parameters, intermediates, a final byte 0x40-0x7e
      var j = i + 2;
      while (j < n) {
        var c = s.charCodeAt(j);
        if (c >= 0x40 && c <= 0x7e) break;
        j++;
        if (j - i > 64) return j; // absurd: drop it
      }
      if (j >= n) return -1;
      if (s.charAt(j) === "m") {
        var params = s.slice(i + 2, j);
        if (/^[0-9;:]*$/.test(params)) applySGR(this.style, params);
      } else if (s.charAt(j) === "K" && this.line) {
        // erase in line: nothing to do for appended output
      }
      return j + 1;
    }
    if (t === "]" || t === "P" || t === "_" || t === "^") { // OSC/DCS/APC/PM: up to BEL or ESC \
      for (var k = i + 2; k < n; k++) {
        var cc = s.charCodeAt(k);
        if (cc === 7) return k + 1;
        if (cc === 0x1b) { if (k + 1 >= n) return -1; if (s.charAt(k + 1) === "\\") return k + 2; }
        if (k - i > 4096) return k; // unterminated: give up on it
      }
      return -1;
    }
    if (t === "(" || t === ")") return i + 2 < n ? i + 3 : -1; // charset selection
    return i + 2; // a two-byte sequence (ESC 7, ESC =, ...)
  };

  // flush renders what is held back at the end of the stream.
  Renderer.prototype.flush = function () {
    var p = this.pending;
    this.pending = "";
    if (p === "\r") return;
  };

  var api = { Renderer: Renderer, applySGR: applySGR, blankStyle: blankStyle, color256: color256 };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.HodeiAnsi = api;
})(this);
