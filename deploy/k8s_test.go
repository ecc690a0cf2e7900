package deploy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/roamsession/roam/internal/proc"
	"github.com/roamsession/roam/internal/testbin"
	"github.com/roamsession/roam/lb"
)

// k8sObject is one manifest, as generic YAML.
type k8sObject map[string]any

// at walks keys (map keys, or list indexes as ints) and returns what is
// there, or nil.
func (o k8sObject) at(path ...any) any {
	var cur any = map[string]any(o)
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := cur.(map[string]any)
			if !ok {
				return nil
			}
			cur = m[k]
		case int:
			l, ok := cur.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			cur = l[k]
		}
	}
	return cur
}

func (o k8sObject) str(path ...any) string { s, _ := o.at(path...).(string); return s }
func (o k8sObject) list(path ...any) []any { l, _ := o.at(path...).([]any); return l }
func (o k8sObject) obj(path ...any) k8sObject {
	m, _ := o.at(path...).(map[string]any)
	return k8sObject(m)
}
func (o k8sObject) name() string { return o.str("kind") + "/" + o.str("metadata", "name") }

// loadManifests reads every document of every YAML file in dir.
func loadManifests(t *testing.T, dir string) []k8sObject {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", dir, err)
	}
	var out []k8sObject
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var o map[string]any
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o != nil {
				out = append(out, k8sObject(o))
			}
		}
	}
	return out
}

func findObject(t *testing.T, objs []k8sObject, kind, name string) k8sObject {
	t.Helper()
	for _, o := range objs {
		if o.str("kind") == kind && o.str("metadata", "name") == name {
			return o
		}
	}
	t.Fatalf("no %s %q in deploy/k8s", kind, name)
	return nil
}

// roamFlags returns the long flags `roam SUB --help` lists.
func roamFlags(t *testing.T, sub string) map[string]bool {
	t.Helper()
	out, err := exec.Command(testbin.Roam(t), sub, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("roam %s --help: %v\n%s", sub, err, out)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`--([a-z][a-z0-9-]*)`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	return flags
}

// containerPorts maps a container's port names and numbers (as strings)
// to "number/protocol".
func containerPorts(c k8sObject) map[string]string {
	ports := map[string]string{}
	for _, p := range c.list("ports") {
		po := k8sObject(p.(map[string]any))
		num := fmt.Sprint(po.at("containerPort"))
		proto := po.str("protocol")
		if proto == "" {
			proto = "TCP"
		}
		ports[po.str("name")] = num + "/" + proto
		ports[num+"/"+proto] = num + "/" + proto
	}
	return ports
}

// argValue returns the value after flag in args, or "".
func argValue(args []string, flag string) string {
	i := slices.Index(args, flag)
	if i < 0 || i+1 >= len(args) {
		return ""
	}
	return args[i+1]
}

func stringsOf(l []any) []string {
	out := make([]string, len(l))
	for i, v := range l {
		out[i] = fmt.Sprint(v)
	}
	return out
}

// TestKubernetesManifestsHangTogether checks what can be checked of
// deploy/k8s without a Kubernetes cluster: every manifest parses and sits
// in the roam namespace; kustomize (when kubectl is installed) builds the
// set; the StatefulSet's Service is the headless seed Service, which
// publishes not-ready pods; each Service selects the pods it means and
// targets ports their containers expose with the right protocol; the node
// arguments use only flags roam node has and only environment variables the
// container sets, bind gossip where the ports say, advertise the pod IP,
// join through the headless Service's DNS name, and read the secret the
// Secret holds; and the balancer's configuration passes lb's own
// validation with one backend per pod, named by pod name.
func TestKubernetesManifestsHangTogether(t *testing.T) {
	objs := loadManifests(t, "k8s")
	for _, o := range objs {
		if o.str("apiVersion") == "" || o.str("metadata", "name") == "" {
			t.Errorf("a manifest without apiVersion or name: %v", o)
		}
		if o.str("kind") != "Namespace" && o.str("metadata", "namespace") != "roam" {
			t.Errorf("%s is in namespace %q, want roam", o.name(), o.str("metadata", "namespace"))
		}
	}
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		out, err := exec.Command(kubectl, "kustomize", "k8s").CombinedOutput()
		if err != nil {
			t.Errorf("kubectl kustomize deploy/k8s: %v\n%s", err, out)
		} else if got := bytes.Count(out, []byte("\nkind: ")) + 1; got < len(objs) {
			t.Errorf("kustomization.yaml builds %d objects, deploy/k8s holds %d: a file is missing from its resources", got, len(objs))
		}
	} else {
		t.Log("kubectl not installed: kustomization.yaml not built")
	}

	sts := findObject(t, objs, "StatefulSet", "roam-node")
	headless := findObject(t, objs, "Service", sts.str("spec", "serviceName"))
	if headless.str("spec", "clusterIP") != "None" || headless.at("spec", "publishNotReadyAddresses") != true {
		t.Errorf("%s: want clusterIP None and publishNotReadyAddresses true (starting pods must find each other)", headless.name())
	}
	podLabels := sts.obj("spec", "template", "metadata", "labels")
	node := sts.obj("spec", "template", "spec", "containers", 0)
	nodePorts := containerPorts(node)

	lbDeploy := findObject(t, objs, "Deployment", "roam-lb")
	lbLabels := lbDeploy.obj("spec", "template", "metadata", "labels")
	lbContainer := lbDeploy.obj("spec", "template", "spec", "containers", 0)
	lbPorts := containerPorts(lbContainer)

	for _, o := range objs {
		if o.str("kind") != "Service" {
			continue
		}
		sel := o.obj("spec", "selector")
		labels, ports := podLabels, nodePorts
		if fmt.Sprint(sel) == fmt.Sprint(map[string]any(lbLabels)) {
			labels, ports = lbLabels, lbPorts
		}
		for k, v := range sel {
			if labels[k] != v {
				t.Errorf("%s selects %s=%v, which no pod template carries", o.name(), k, v)
			}
		}
		for _, p := range o.list("spec", "ports") {
			po := k8sObject(p.(map[string]any))
			proto := po.str("protocol")
			if proto == "" {
				proto = "TCP"
			}
			target := fmt.Sprint(po.at("targetPort"))
			got, ok := ports[target]
			if !ok {
				t.Errorf("%s port %s targets %s, which the container does not expose", o.name(), po.str("name"), target)
			} else if !strings.HasSuffix(got, "/"+proto) {
				t.Errorf("%s port %s is %s, the container port %s is %s", o.name(), po.str("name"), proto, target, got)
			}
		}
	}
	for _, o := range objs {
		if o.str("kind") == "PodDisruptionBudget" {
			for k, v := range o.obj("spec", "selector", "matchLabels") {
				if podLabels[k] != v {
					t.Errorf("%s selects %s=%v, which the roam-node pods do not carry", o.name(), k, v)
				}
			}
		}
	}

	// The node's command line.
	args := stringsOf(node.list("args"))
	if args[0] != "node" {
		t.Fatalf("roam-node args start with %q, want the node subcommand", args[0])
	}
	flags := roamFlags(t, "node")
	env := map[string]k8sObject{}
	for _, e := range node.list("env") {
		eo := k8sObject(e.(map[string]any))
		env[eo.str("name")] = eo
	}
	for _, a := range args[1:] {
		if f, ok := strings.CutPrefix(a, "--"); ok && !flags[f] {
			t.Errorf("roam-node passes --%s, which roam node does not have", f)
		}
		for _, m := range regexp.MustCompile(`\$\(([A-Z_]+)\)`).FindAllStringSubmatch(a, -1) {
			if env[m[1]] == nil {
				t.Errorf("roam-node argument %q uses $(%s), which the container's env does not set", a, m[1])
			}
		}
	}
	if argValue(args, "--store") != "cluster:backup" || argValue(args, "--id") != "$(POD_NAME)" {
		t.Errorf("roam-node args %q: want --store cluster:backup and --id $(POD_NAME)", args)
	}
	gossipPortNum := strings.TrimPrefix(argValue(args, "--cluster-bind"), "0.0.0.0:")
	gp, err := strconv.Atoi(gossipPortNum)
	if err != nil {
		t.Fatalf("--cluster-bind %q: want 0.0.0.0:PORT", argValue(args, "--cluster-bind"))
	}
	if nodePorts["gossip"] != gossipPortNum+"/TCP" || nodePorts["gossip-udp"] != gossipPortNum+"/UDP" || nodePorts["replication"] != strconv.Itoa(gp+1)+"/TCP" {
		t.Errorf("container ports %v: want gossip %d TCP and UDP, replication %d (gossip + 1)", nodePorts, gp, gp+1)
	}
	if argValue(args, "--cluster-advertise") != "$(POD_IP):"+gossipPortNum || env["POD_IP"].str("valueFrom", "fieldRef", "fieldPath") != "status.podIP" {
		t.Errorf("--cluster-advertise %q: want $(POD_IP):%s with POD_IP from status.podIP", argValue(args, "--cluster-advertise"), gossipPortNum)
	}
	if env["POD_NAME"].str("valueFrom", "fieldRef", "fieldPath") != "metadata.name" {
		t.Error("POD_NAME must come from metadata.name: the pod name is the node id")
	}
	wantJoin := fmt.Sprintf("%s.%s.svc.cluster.local:%s", headless.str("metadata", "name"), headless.str("metadata", "namespace"), gossipPortNum)
	if argValue(args, "--join") != wantJoin {
		t.Errorf("--join %q, want the headless Service's name %s", argValue(args, "--join"), wantJoin)
	}
	httpPort := strings.TrimPrefix(argValue(args, "--listen"), "0.0.0.0:")
	if nodePorts["http"] != httpPort+"/TCP" {
		t.Errorf("--listen %q, but the http container port is %s", argValue(args, "--listen"), nodePorts["http"])
	}
	if p := node.obj("readinessProbe", "httpGet"); p.str("path") != "/readyz" || p.str("port") != "http" {
		t.Errorf("readinessProbe %v: want GET /readyz on http", p)
	}
	if p := node.obj("livenessProbe", "httpGet"); p.str("path") != "/healthz" || p.str("port") != "http" {
		t.Errorf("livenessProbe %v: want GET /healthz on http", p)
	}
	secretRef := env["ROAM_CLUSTER_SECRET"].obj("valueFrom", "secretKeyRef")
	secret := findObject(t, objs, "Secret", secretRef.str("name"))
	if secret.str("stringData", secretRef.str("key")) == "" {
		t.Errorf("ROAM_CLUSTER_SECRET reads key %q of %s, which it does not hold", secretRef.str("key"), secret.name())
	}

	// The balancer's configuration, read by lb itself.
	cfg, err := lb.Parse([]byte(findObject(t, objs, "ConfigMap", "roam-lb").str("data", "lb.yaml")))
	if err == nil {
		err = cfg.Provision()
	}
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		t.Fatalf("ConfigMap roam-lb: lb.yaml: %v", err)
	}
	replicas := sts.at("spec", "replicas").(int)
	if cfg.Policy != "owner" || len(cfg.Backends) != replicas {
		t.Errorf("lb.yaml: policy %q with %d backends, want owner with one per replica (%d)", cfg.Policy, len(cfg.Backends), replicas)
	}
	for i, b := range cfg.Backends {
		pod := fmt.Sprintf("%s-%d", sts.str("metadata", "name"), i)
		want := fmt.Sprintf("http://%s.%s.%s.svc.cluster.local:%s", pod, headless.str("metadata", "name"), headless.str("metadata", "namespace"), httpPort)
		if b.ID != pod || b.URL != want {
			t.Errorf("lb.yaml backend %d is %s=%s, want %s=%s (ids are node ids, which are pod names)", i, b.ID, b.URL, pod, want)
		}
	}
	lbArgs := stringsOf(lbContainer.list("args"))
	lbFlags := roamFlags(t, "lb")
	for _, a := range lbArgs[1:] {
		if f, ok := strings.CutPrefix(a, "--"); ok && !lbFlags[f] {
			t.Errorf("roam-lb passes --%s, which roam lb does not have", f)
		}
	}
	mounts := map[string]string{}
	for _, m := range lbContainer.list("volumeMounts") {
		mo := k8sObject(m.(map[string]any))
		mounts[mo.str("name")] = mo.str("mountPath")
	}
	if argValue(lbArgs, "--config") != mounts["config"]+"/lb.yaml" || argValue(lbArgs, "--secret-file") != mounts["secrets"]+"/lb-secret" {
		t.Errorf("roam-lb reads %q and %q, but mounts %v", argValue(lbArgs, "--config"), argValue(lbArgs, "--secret-file"), mounts)
	}
}

// TestKubernetesNodeArgsFormACluster runs the StatefulSet's container
// command line for real, three times, as pods roam-node-0…2 with the
// Secret's cluster secret: only the addresses become loopback ones
// (POD_IP 127.0.0.1, gossip on free ports), and the headless Service's
// name becomes localhost, a DNS name as the seed is one. The nodes must
// form one cluster, and a login through roam lb with the ConfigMap's
// configuration (hosts rewritten) must survive the kill of its node.
func TestKubernetesNodeArgsFormACluster(t *testing.T) {
	objs := loadManifests(t, "k8s")
	sts := findObject(t, objs, "StatefulSet", "roam-node")
	container := sts.obj("spec", "template", "spec", "containers", 0)
	args := stringsOf(container.list("args"))
	secret := findObject(t, objs, "Secret", "roam-secrets").str("stringData", "cluster-secret")

	replicas := sts.at("spec", "replicas").(int)
	gossip := make([]int, replicas)
	for i := range gossip {
		gossip[i] = gossipPort(t)
	}
	nodes := &nodeSet{}
	for i := range replicas {
		pod := fmt.Sprintf("roam-node-%d", i)
		argv := slices.Clone(args)
		for j, a := range argv {
			a = strings.ReplaceAll(a, "$(POD_NAME)", pod)
			a = strings.ReplaceAll(a, "$(POD_IP)", "127.0.0.1")
			switch argv[max(j-1, 0)] {
			case "--listen":
				a = "127.0.0.1:0"
			case "--cluster-bind", "--cluster-advertise":
				a = fmt.Sprintf("127.0.0.1:%d", gossip[i])
			case "--join":
				a = fmt.Sprintf("localhost:%d", gossip[0])
			}
			argv[j] = a
		}
		nodes.nodes = append(nodes.nodes, startRoamNode(t, pod, argv, []string{"ROAM_CLUSTER_SECRET=" + secret}, "cluster"))
	}
	waitMembers(t, nodes, replicas)

	// The balancer: the Deployment's arguments, with the ConfigMap's
	// lb.yaml and the Secret's lb-secret where it mounts them.
	listen, err := proc.FreeAddr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := proc.FreeAddr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	text := findObject(t, objs, "ConfigMap", "roam-lb").str("data", "lb.yaml")
	repl := []string{"listen: 0.0.0.0:8080", "listen: " + listen, "admin: 0.0.0.0:8081", "admin: " + admin}
	for _, n := range nodes.nodes {
		repl = append(repl, fmt.Sprintf("http://%s.roam-cluster.roam.svc.cluster.local:8080", n.ID), "http://"+n.Addr)
	}
	for i := 0; i < len(repl); i += 2 {
		if strings.Count(text, repl[i]) != 1 {
			t.Fatalf("ConfigMap roam-lb: %q occurs %d times in lb.yaml, want once", repl[i], strings.Count(text, repl[i]))
		}
	}
	text = strings.NewReplacer(repl...).Replace(text)
	dir := t.TempDir()
	cfgPath, secretPath := filepath.Join(dir, "lb.yaml"), filepath.Join(dir, "lb-secret")
	if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	lbSecret := findObject(t, objs, "Secret", "roam-secrets").str("stringData", "lb-secret")
	if err := os.WriteFile(secretPath, []byte(lbSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	lbArgs := stringsOf(findObject(t, objs, "Deployment", "roam-lb").obj("spec", "template", "spec", "containers", 0).list("args"))
	lbArgs[slices.Index(lbArgs, "--config")+1] = cfgPath
	lbArgs[slices.Index(lbArgs, "--secret-file")+1] = secretPath
	bal := startRoamLB(t, lbArgs, listen, admin, replicas)
	checkLoginSurvivesNodeKill(t, bal, nodes, failoverCheck{})
}
