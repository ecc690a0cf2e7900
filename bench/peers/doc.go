// Package peers holds benchmarks that run roam beside the libraries it is
// compared with (alexedwards/scs and its stores), in the same process and
// the same run, so the ratios mean something on a shared, noisy machine.
// It is a module of its own so that roam itself does not depend on them.
package peers
