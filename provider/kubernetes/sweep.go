package kubernetes

import (
	"context"
	"errors"
	"maps"
	"slices"

	"github.com/hodei-jobs/hodei/provider"
)

var _ provider.OrphanSweeper = (*Driver)(nil)

// SweepOrphans deletes the owner's Pods (grace period 0) and Secrets whose
// hodei.instance label is missing or not in keep: a Secret left by a
// crash between creating it and its Pod has no Pod for List to report, so
// the Manager's own sweep cannot find it.
//
// It deletes by label selector (deletecollection, "hodei.instance notin
// (keep)"), so it needs no permission beyond those Start and RemoveAll
// use: in particular not list on secrets, which would let the server read
// every Secret in the namespace.
//
// keep must hold every live instance of owner, whatever its provider: two
// providers of one server share the owner id and may share a namespace.
func (d *Driver) SweepOrphans(ctx context.Context, owner string, keep map[string]bool) error {
	var ids []string
	for _, id := range slices.Sorted(maps.Keys(keep)) {
		// An id that is no label value labels nothing of ours.
		if keep[id] && id != "" && checkLabelValue(id) == "" {
			ids = append(ids, id)
		}
	}
	sel := selector(map[string]string{provider.LabelManaged: "true", provider.LabelOwner: owner}, provider.LabelInstance, ids)
	perr := d.client.deletePods(ctx, sel)
	serr := d.client.deleteSecrets(ctx, sel)
	err := errors.Join(apiError("delete orphan pods of "+owner, perr), apiError("delete orphan secrets of "+owner, serr))
	if err == nil {
		d.log.DebugContext(ctx, "orphans swept", "selector", sel)
	}
	return err
}
