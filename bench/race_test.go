//go:build race

package bench

// raceEnabled: the race detector slows gonum's PNG rasteriser about
// tenfold, so tests under it draw the charts as SVG only.
const raceEnabled = true
