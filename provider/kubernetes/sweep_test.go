package kubernetes

import (
	"context"
	"log/slog"
	"slices"
	"testing"

	"github.com/hodei-jobs/hodei/provider"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SweepOrphans deletes the owner's Pods and Secrets whose instance is not
// kept (a lone Secret included), and nothing of another owner's.
func TestSweepOrphans(t *testing.T) {
	d, c, ns := setup(t)
	d.log = slog.New(slog.DiscardHandler)
	ctx := context.Background()
	start(t, d, request("kept"))
	start(t, d, request("stray"))
	theirs := request("theirs")
	theirs.Owner = "server-2"
	start(t, d, theirs)
	// What a crash between creating the Secret and its Pod leaves behind.
	lone := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "hodei-agent-lone", Labels: map[string]string{
		provider.LabelManaged: "true", provider.LabelOwner: owner, provider.LabelInstance: "lone", provider.LabelProvider: "k8s-pool"}}}
	// And one without an instance label (not made by this driver, but
	// labelled as ours all the same).
	unlabelled := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "hodei-agent-unlabelled", Labels: map[string]string{
		provider.LabelManaged: "true", provider.LabelOwner: owner}}}
	for _, s := range []*corev1.Secret{lone, unlabelled} {
		if _, err := c.Client.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, o := range []string{owner, "server-2"} {
			if err := d.RemoveAll(ctx, o); err != nil {
				t.Error(err)
			}
		}
	}()

	// Ids that are no label value, and false entries, keep nothing.
	keep := map[string]bool{"kept": true, "theirs": true, "stray": false, "Not A Label!": true, "": true}
	if err := d.SweepOrphans(ctx, owner, keep); err != nil {
		t.Fatalf("SweepOrphans() = %v", err)
	}
	names := func(list func() ([]string, error)) []string {
		t.Helper()
		n, err := list()
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(n)
		return n
	}
	pods := func() ([]string, error) {
		l, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		var out []string
		for _, p := range l.Items {
			out = append(out, p.Name)
		}
		return out, nil
	}
	secrets := func() ([]string, error) {
		l, err := c.Client.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		var out []string
		for _, s := range l.Items {
			out = append(out, s.Name)
		}
		return out, nil
	}
	want := []string{"hodei-agent-kept", "hodei-agent-theirs"}
	if got := names(pods); !slices.Equal(got, want) {
		t.Errorf("pods after SweepOrphans = %v, want %v", got, want)
	}
	if got := names(secrets); !slices.Equal(got, want) {
		t.Errorf("secrets after SweepOrphans = %v, want %v", got, want)
	}
	// Nothing left to sweep is not an error.
	if err := d.SweepOrphans(ctx, owner, keep); err != nil {
		t.Errorf("SweepOrphans() again = %v", err)
	}
	// Keeping nothing sweeps all of the owner's, still not the other's.
	if err := d.SweepOrphans(ctx, owner, nil); err != nil {
		t.Fatalf("SweepOrphans(keep nothing) = %v", err)
	}
	want = []string{"hodei-agent-theirs"}
	if got := names(pods); !slices.Equal(got, want) {
		t.Errorf("pods after SweepOrphans(keep nothing) = %v, want %v", got, want)
	}
	if got := names(secrets); !slices.Equal(got, want) {
		t.Errorf("secrets after SweepOrphans(keep nothing) = %v, want %v", got, want)
	}
}
