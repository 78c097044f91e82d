// ansi_harness.js renders chunks (argv[3], a JSON array) with ansi.js (argv[2])
// into a tiny fake DOM and prints it as HTML: web_test.go runs it with node.
// minimal DOM for node
function Node(tag){this.tagName=tag;this.children=[];this.className="";this.style={};this.ownerDocument=doc;}
Node.prototype.appendChild=function(c){this.children.push(c);c.parent=this;return c;};
Node.prototype.removeChild=function(c){this.children.splice(this.children.indexOf(c),1);};
Object.defineProperty(Node.prototype,"firstChild",{get(){return this.children[0]||null;}});
var doc={createElement:t=>new Node(t),createTextNode:t=>({text:t})};
function html(n){ if(n.text!==undefined) return n.text.replace(/&/g,"&amp;").replace(/</g,"&lt;"); var inner=n.children.map(html).join(""); var st=Object.keys(n.style).map(k=>k+":"+n.style[k]).join(";"); return "<"+n.tagName+(n.className?' class="'+n.className+'"':"")+(st?' style="'+st+'"':"")+">"+inner+"</"+n.tagName+">"; }
var A=require(process.argv[2]);
var root=new Node("div");
var r=new A.Renderer(root);
var chunks=JSON.parse(process.argv[3]);
chunks.forEach(c=>r.write(c)); r.flush();
console.log(root.children.map(html).join("\n"));
