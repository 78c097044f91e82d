// Package secrets is Hodei's secret store: named values that jobs receive as
// environment variables, kept encrypted at rest.
//
// Invariants:
//   - Values are encrypted with AES-256-GCM, each under a fresh random nonce,
//     with the secret's name as additional data (so a value cannot be moved
//     to another name in the file). Names, creation and update times are
//     stored in clear: names are what events and job specs refer to.
//   - A value never leaves the store except through Resolve, which the
//     orchestrator calls when it sends a job to the agent that runs it.
//     Errors name secrets, never values; List returns names only.
//   - A value is at least MinValueBytes long, counted as the agent's masker
//     counts it (also after trimming white space): a shorter value could not
//     be masked in job output without masking ordinary text.
//   - Every change rewrites the file atomically (temporary file, fsync,
//     rename, fsync of the directory): a crash leaves the old or the new
//     file, never a torn one.
//
// # Key
//
// The 32-byte key comes from Options.Key (the server passes
// HODEI_SECRET_KEY, base64, through ParseKey) or from the key file in the
// store's directory (KeyFile, base64 text, mode 0600), created on first
// start. A key file readable by group or others is refused. The data file
// holds a key check value, so a wrong key is found at Open ("does not
// decrypt"), not when a job starts. A data file whose key file is gone is an
// error, not a reason to make a new key: the values would be lost.
//
// # Layout
//
//	<dir>/secret.key     base64 key (unless the key is given)
//	<dir>/secrets.json   {"version":1,"key_check":"…","secrets":{"name":{"sealed":"…",…}}}
//
// Store implements core.SecretResolver.
package secrets
