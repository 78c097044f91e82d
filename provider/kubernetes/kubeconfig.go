package kubernetes

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// kubeconfig is the part of a kubeconfig file the driver uses. The YAML
// is turned into JSON first (sigs.k8s.io/yaml, as client-go does), so
// *-data fields are base64 and unknown fields are ignored.
type kubeconfig struct {
	CurrentContext string         `json:"current-context"`
	Clusters       []namedCluster `json:"clusters"`
	Users          []namedUser    `json:"users"`
	Contexts       []struct {
		Name    string `json:"name"`
		Context struct {
			Cluster   string `json:"cluster"`
			User      string `json:"user"`
			Namespace string `json:"namespace"`
		} `json:"context"`
	} `json:"contexts"`
}

type namedCluster struct {
	Name    string           `json:"name"`
	Cluster kubeconfigServer `json:"cluster"`
}

type namedUser struct {
	Name string         `json:"name"`
	User kubeconfigUser `json:"user"`
}

type kubeconfigServer struct {
	Server                   string `json:"server"`
	TLSServerName            string `json:"tls-server-name"`
	InsecureSkipTLSVerify    bool   `json:"insecure-skip-tls-verify"`
	CertificateAuthority     string `json:"certificate-authority"`
	CertificateAuthorityData []byte `json:"certificate-authority-data"`
	ProxyURL                 string `json:"proxy-url"`
}

type kubeconfigUser struct {
	ClientCertificate     string              `json:"client-certificate"`
	ClientCertificateData []byte              `json:"client-certificate-data"`
	ClientKey             string              `json:"client-key"`
	ClientKeyData         []byte              `json:"client-key-data"`
	Token                 string              `json:"token"`
	TokenFile             string              `json:"tokenFile"`
	Username              string              `json:"username"`
	Password              string              `json:"password"`
	Impersonate           string              `json:"as"`
	ImpersonateUID        string              `json:"as-uid"`
	ImpersonateGroups     []string            `json:"as-groups"`
	ImpersonateUserExtra  map[string][]string `json:"as-user-extra"`
	AuthProvider          *struct {
		Name string `json:"name"`
	} `json:"auth-provider"`
	Exec *struct {
		Command string   `json:"command"`
		Args    []string `json:"args"`
		Env     []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"env"`
		APIVersion         string `json:"apiVersion"`
		InstallHint        string `json:"installHint"`
		ProvideClusterInfo bool   `json:"provideClusterInfo"`
		InteractiveMode    string `json:"interactiveMode"`
	} `json:"exec"`
}

// loadKubeconfig returns the Connection of the current context of the
// kubeconfig file at path. Relative file paths in it are relative to its
// directory. Errors name the file and the field.
func loadKubeconfig(path string) (Connection, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Connection{}, err
	}
	dir := filepath.Dir(path)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return parseKubeconfig(b, dir)
}

// parseKubeconfig is loadKubeconfig of a file in dir that holds b.
func parseKubeconfig(b []byte, dir string) (Connection, error) {
	var kc kubeconfig
	if err := yaml.Unmarshal(b, &kc); err != nil {
		return Connection{}, fmt.Errorf("parse: %w", err)
	}
	return kc.connection(dir)
}

func (kc *kubeconfig) connection(dir string) (Connection, error) {
	if kc.CurrentContext == "" {
		return Connection{}, errors.New("current-context: not set")
	}
	var conn Connection
	var clusterName, userName string
	found := false
	for _, c := range kc.Contexts {
		if c.Name == kc.CurrentContext {
			clusterName, userName, conn.Namespace, found = c.Context.Cluster, c.Context.User, c.Context.Namespace, true
			break
		}
	}
	if !found {
		return Connection{}, fmt.Errorf("current-context %q: no such context", kc.CurrentContext)
	}
	if err := kc.cluster(&conn, clusterName, dir); err != nil {
		return Connection{}, fmt.Errorf("context %q: %w", kc.CurrentContext, err)
	}
	if userName != "" {
		if err := kc.user(&conn, userName, dir); err != nil {
			return Connection{}, fmt.Errorf("context %q: %w", kc.CurrentContext, err)
		}
	}
	return conn, nil
}

func (kc *kubeconfig) cluster(conn *Connection, name, dir string) error {
	if name == "" {
		return errors.New("cluster: not set")
	}
	i := slices.IndexFunc(kc.Clusters, func(c namedCluster) bool { return c.Name == name })
	if i < 0 {
		return fmt.Errorf("cluster %q: no such cluster", name)
	}
	c := kc.Clusters[i].Cluster
	if c.Server == "" {
		return fmt.Errorf("cluster %q: server: not set", name)
	}
	conn.Server, conn.TLSServerName, conn.Insecure, conn.ProxyURL = c.Server, c.TLSServerName, c.InsecureSkipTLSVerify, c.ProxyURL
	var err error
	if conn.CAData, err = dataOrFile(c.CertificateAuthorityData, c.CertificateAuthority, dir,
		"certificate-authority-data", "certificate-authority"); err != nil {
		return fmt.Errorf("cluster %q: %w", name, err)
	}
	if conn.Insecure && len(conn.CAData) > 0 {
		return fmt.Errorf("cluster %q: certificate-authority and insecure-skip-tls-verify are both set: use one", name)
	}
	return nil
}

func (kc *kubeconfig) user(conn *Connection, name, dir string) error {
	i := slices.IndexFunc(kc.Users, func(u namedUser) bool { return u.Name == name })
	if i < 0 {
		return fmt.Errorf("user %q: no such user", name)
	}
	u := kc.Users[i].User
	fail := func(format string, args ...any) error {
		return fmt.Errorf("user %q: %s", name, fmt.Sprintf(format, args...))
	}
	if u.AuthProvider != nil {
		return fail("auth-provider %q is not supported: use an exec credential plugin", u.AuthProvider.Name)
	}
	if len(u.ImpersonateUserExtra) > 0 {
		return fail("as-user-extra is not supported")
	}
	var err error
	if conn.CertData, err = dataOrFile(u.ClientCertificateData, u.ClientCertificate, dir,
		"client-certificate-data", "client-certificate"); err != nil {
		return fail("%v", err)
	}
	if conn.KeyData, err = dataOrFile(u.ClientKeyData, u.ClientKey, dir, "client-key-data", "client-key"); err != nil {
		return fail("%v", err)
	}
	switch {
	case len(conn.CertData) > 0 && len(conn.KeyData) == 0:
		return fail("client-certificate without client-key or client-key-data")
	case len(conn.KeyData) > 0 && len(conn.CertData) == 0:
		return fail("client-key without client-certificate or client-certificate-data")
	}
	var methods []string
	if u.Token != "" || u.TokenFile != "" {
		methods = append(methods, "token")
	}
	if u.Username != "" || u.Password != "" {
		methods = append(methods, "username/password")
	}
	if u.Exec != nil {
		methods = append(methods, "exec")
	}
	if len(methods) > 1 {
		return fail("%s are all set: use one", strings.Join(methods, ", "))
	}
	conn.BearerToken, conn.Username, conn.Password = u.Token, u.Username, u.Password
	if u.Token == "" && u.TokenFile != "" {
		conn.TokenFile = resolve(dir, u.TokenFile)
	}
	conn.Impersonate, conn.ImpersonateUID, conn.ImpersonateGroups = u.Impersonate, u.ImpersonateUID, u.ImpersonateGroups
	if e := u.Exec; e != nil {
		if e.Command == "" {
			return fail("exec.command: not set")
		}
		switch e.InteractiveMode {
		case "", "Never", "IfAvailable":
		case "Always":
			return fail("exec.interactiveMode Always: the server has no terminal for the plugin to prompt on")
		default:
			return fail("exec.interactiveMode %q: want Never, IfAvailable or Always", e.InteractiveMode)
		}
		if e.APIVersion != execV1 && e.APIVersion != execV1beta1 {
			return fail("exec.apiVersion %q: want %s or %s", e.APIVersion, execV1, execV1beta1)
		}
		x := &ExecConfig{Command: e.Command, Args: e.Args, APIVersion: e.APIVersion, ProvideClusterInfo: e.ProvideClusterInfo}
		// As client-go: only a command with a path separator is a
		// path, relative to the kubeconfig; a bare name is looked up in
		// PATH.
		if strings.ContainsRune(x.Command, filepath.Separator) {
			x.Command = resolve(dir, x.Command)
		}
		for _, v := range e.Env {
			if v.Name == "" {
				return fail("exec.env: entry without name")
			}
			x.Env = append(x.Env, v.Name+"="+v.Value)
		}
		conn.Exec = x
	}
	return nil
}

// dataOrFile returns data, or the contents of file (relative to dir).
// Setting both is an error, as in client-go.
func dataOrFile(data []byte, file, dir, dataField, fileField string) ([]byte, error) {
	switch {
	case len(data) > 0 && file != "":
		return nil, fmt.Errorf("%s and %s are both set: use one", dataField, fileField)
	case len(data) > 0:
		return data, nil
	case file == "":
		return nil, nil
	}
	b, err := os.ReadFile(resolve(dir, file))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fileField, err)
	}
	return b, nil
}

func resolve(dir, path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(dir, path)
}

// serviceAccountDir is where a Pod's service account credentials are
// mounted.
const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// errNotInCluster is returned by inCluster outside a Pod.
var errNotInCluster = errors.New("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: not running in a Pod")

// inCluster returns the Connection of the Pod's service account: the API
// server from the environment, the token file (re-read, as bound tokens
// rotate), the cluster's CA and the Pod's namespace, from dir. A missing
// CA file means the system's roots, as with client-go.
func inCluster(getenv func(string) string, dir string) (Connection, error) {
	host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return Connection{}, errNotInCluster
	}
	conn := Connection{Server: "https://" + net.JoinHostPort(host, port), TokenFile: filepath.Join(dir, "token")}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	switch {
	case err == nil:
		conn.CAData = ca
	case !errors.Is(err, os.ErrNotExist):
		return Connection{}, err
	}
	if ns, err := os.ReadFile(filepath.Join(dir, "namespace")); err == nil {
		conn.Namespace = strings.TrimSpace(string(ns))
	}
	return conn, nil
}
