// Package kubernetes is the provider.Driver that runs agents as Kubernetes
// Pods.
//
// Start creates, for instance <id>, a Secret and a Pod, both named
// hodei-agent-<id> and labelled hodei.managed=true, hodei.owner,
// hodei.instance and hodei.provider:
//
//	Secret hodei-agent-<id>   SecretEnv (HODEI_TOKEN), ownerReferences -> Pod
//	Pod    hodei-agent-<id>   container "agent": image, Env as values,
//	                          SecretEnv as secretKeyRef, HODEI_POD_NAME from
//	                          the downward API, requests = limits from
//	                          CPUMillis/MemoryBytes, restartPolicy Never
//
// The Secret is created first so the kubelet never sees a Pod whose Secret
// is missing; its ownerReference to the Pod lets the cluster's garbage
// collector delete it with the Pod, and Remove deletes it explicitly too,
// so nothing depends on the collector running.
//
// List maps Pod phases to provider phases (Pending -> pending, Running ->
// running, Succeeded and Failed -> exited) and explains pending Pods in
// the cluster's words: an unschedulable PodScheduled condition first, then
// a container's waiting reason (ErrImagePull, ImagePullBackOff,
// CreateContainerConfigError), then, for Pods pending longer than a few
// seconds, the newest Warning Event about the Pod. Exited Pods carry the
// agent container's exit code and reason ("exited with code 137
// (OOMKilled)").
//
// Errors that mean the API server could not be reached (connection
// refused, timeouts, 503, 429) wrap provider.ErrUnavailable. An image that
// cannot be pulled is only known after the Pod was created: it shows in
// List's Reason, not as an error from Start.
//
// Without a configured ServiceAccount the Pod does not mount a service
// account token: the agent never talks to the Kubernetes API, and the jobs
// it runs should not get the namespace's default credentials.
//
// The identity the server runs as needs, in the namespace: pods create,
// delete, deletecollection, list; secrets create, patch, delete,
// deletecollection; events list (optional: without it List's reasons lack
// the Event fallback).
//
// SweepOrphans (provider.OrphanSweeper) deletes, by label selector, the
// owner's Pods and Secrets whose instance the Manager's log does not keep:
// after a crash between creating a Secret and its Pod, the Secret has no
// Pod for List to report. It needs no permission beyond those above (not
// list on secrets).
//
// # Talking to the API server
//
// The driver does not link client-go: every hodei process would pay for
// its package initialisation and API scheme at start, Kubernetes
// provider or not. It makes its few core/v1 calls (Secrets create,
// merge-patch, delete, deletecollection; Pods create, delete with grace
// period 0, deletecollection, list; Events list) as JSON over net/http,
// with its own structs holding only the fields it uses (types.go), and
// classifies error answers by the Status object's reason and code as
// client-go's apierrors does. Like the client-go configuration it
// replaces, it sends User-Agent "hodei", gives every request a minute,
// rate limits itself to 50 requests a second with bursts of 100, and
// retries answers that carry a Retry-After (429, 5xx).
//
// Where the API server is and how to authenticate is a Connection. New
// builds it from Config.Kubeconfig (the file's current-context: cluster
// server, certificate-authority(-data), insecure-skip-tls-verify,
// tls-server-name, proxy-url; user client-certificate(-data) and
// client-key(-data), token, tokenFile, username/password, as/as-uid/
// as-groups, and exec credential plugins of
// client.authentication.k8s.io/v1 and v1beta1; relative paths are
// relative to the kubeconfig's directory) or, with no kubeconfig, from
// the Pod's service account (KUBERNETES_SERVICE_HOST/PORT and
// /var/run/secrets/kubernetes.io/serviceaccount, whose token is re-read
// every minute since bound tokens rotate). An exec plugin's credential is
// cached until its expirationTimestamp; a 401 runs the plugin again and
// retries the request once. Auth providers (auth-provider) are not
// supported and fail New with an error naming them. NewWithConnection
// takes a Connection directly.
//
// # Tests: what is real and what is simulated
//
// The tests run against a real control plane: etcd v3.7.0 and
// kube-apiserver built from k8s.io/kubernetes v1.37.2 (set HODEI_K8S_BIN
// to the directory `make -s k8s-bins` prints; without it these tests
// skip, and with CI=true they fail). Real: the API server with its
// authentication, admission, defaulting and validation, etcd storage,
// the driver's own HTTP client, and the API objects the driver writes
// and reads (Pods, Secrets with secretKeyRef and ownerReferences, Events,
// label selectors); the tests themselves inspect the cluster with
// client-go, and ConnectionFromREST (a test helper) turns its
// configuration into a Connection. Kubeconfig parsing, exec plugins,
// in-cluster configuration and error answers are tested against fake
// servers (client_test.go, exec_test.go, kubeconfig_test.go). In the end-to-end tests (e2e_test.go) the driver runs as a
// service account, impersonated, bound to a Role with exactly the
// permissions listed above, so RBAC authorizes every driver call as in a
// deployment; they also run the real provider Manager, a real in-process
// Hodei server (server.New: core, event log, log store and the HWP
// listener, plaintext with a static join token), and the real hodei-agent
// binary, which connects only with the join token it reads from the Pod's
// Secret, and runs the jobs.
//
// Simulated by the tests (k8stest.Kubelet and helpers), since a bare
// control plane has no scheduler, kubelet or controllers: scheduling (a
// Binding through the pods/binding subresource, or the Unschedulable
// condition a scheduler would set when a test refuses the Pod), the
// kubelet's status updates (Running, then Succeeded or Failed with the
// exit code), running the container (the agent runs as a local process
// with the environment the Pod's spec resolves to, not in a container:
// the image is never pulled and resource limits are not enforced), image
// pull failures (set by hand as container waiting reasons), the garbage
// collector (the driver deletes Secrets itself) and namespace deletion.
package kubernetes
