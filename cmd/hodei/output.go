package main

import (
	"encoding/json"
	"io"

	"github.com/spf13/cobra"
)

// addOutputFlag adds the -o/--output flag every command that prints results
// has: "text" (human, the default) or "json".
func addOutputFlag(c *cobra.Command, dst *string) {
	c.Flags().StringVarP(dst, "output", "o", "text", `output format: "text" or "json"`)
}

// checkOutput validates an -o value.
func checkOutput(v string) error {
	if v != "text" && v != "json" {
		return usageError("--output %q: want \"text\" or \"json\"", v)
	}
	return nil
}

// writeJSON prints v as one JSON object followed by a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	return enc.Encode(v)
}
