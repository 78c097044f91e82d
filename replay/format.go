package replay

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteTimeline prints entries as a table for people: position, stream
// version, time, actor, type and summary, one event a line. Events this
// binary cannot decode are marked "?" after their type.
func WriteTimeline(w io.Writer, entries []Entry) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POSITION\tVER\tTIME\tACTOR\tTYPE\tSUMMARY")
	for i := range entries {
		e := &entries[i]
		typ := e.Type
		if !e.Known {
			typ += fmt.Sprintf("@%d?", e.SchemaVersion)
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\n", e.Position, e.StreamVersion, e.At.UTC().Format(TimeFormat), e.Actor, typ, e.Summary)
	}
	return tw.Flush()
}
