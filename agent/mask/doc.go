// Package mask removes secret values from a byte stream before it leaves the
// agent.
//
// A Masker is built from a job's secrets. Each secret is registered in several
// forms: as given, trimmed of surrounding whitespace, with "\n" turned into the
// "\r\n" a PTY writes, base64 (standard and URL alphabets, the three byte
// alignments, trimmed to the stable whole groups), URL-encoded (query and path
// forms, upper- and lower-case hex) and JSON-escaped. Forms shorter than
// MinSecretLen are not registered; a secret that is itself shorter is rejected
// with a *ShortSecretError, so a job never runs with a secret that would leak.
//
// The stream is scanned with an Aho-Corasick automaton
// (github.com/cloudflare/ahocorasick). Invariants, whatever the write sizes:
//
//   - every byte that belongs to an occurrence of any form in the whole stream
//     is replaced; each maximal run of overlapping or adjacent occurrences
//     becomes one Marker;
//   - the output equals masking the whole stream in one call (split
//     invariance), so a secret split across PTY reads or log chunks is caught;
//   - only the longest suffix that is still a proper prefix of some form is
//     held back (at most the longest form minus one byte); Flush releases it at
//     end of stream as plain text.
//
// A Masker is not safe for concurrent use: one per output stream.
package mask
