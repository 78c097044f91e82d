package kubernetes

import (
	"context"
	"errors"
	"maps"
	"slices"

	"github.com/hodei-jobs/hodei/provider"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/validation"
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
	sel := labels.SelectorFromSet(labels.Set{provider.LabelManaged: "true", provider.LabelOwner: owner})
	var ids []string
	for _, id := range slices.Sorted(maps.Keys(keep)) {
		// An id that is no label value labels nothing of ours.
		if keep[id] && len(validation.IsValidLabelValue(id)) == 0 && id != "" {
			ids = append(ids, id)
		}
	}
	if len(ids) > 0 {
		req, err := labels.NewRequirement(provider.LabelInstance, selection.NotIn, ids)
		if err != nil {
			return errors.New("kubernetes: sweep orphans of " + owner + ": " + err.Error())
		}
		sel = sel.Add(*req)
	}
	opts := metav1.ListOptions{LabelSelector: sel.String()}
	perr := d.client.CoreV1().Pods(d.ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}, opts)
	serr := d.client.CoreV1().Secrets(d.ns).DeleteCollection(ctx, metav1.DeleteOptions{}, opts)
	err := errors.Join(apiError("delete orphan pods of "+owner, perr), apiError("delete orphan secrets of "+owner, serr))
	if err == nil {
		d.log.DebugContext(ctx, "orphans swept", "selector", opts.LabelSelector)
	}
	return err
}
