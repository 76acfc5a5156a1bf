package main

import (
	"fmt"
	"math"
	"strings"
)

// The chart: for each geometry, cold one-way latency and idle reads per
// host against HIGH (the highest host id in use), sanlock-msg beside real
// sanlock, at each io_timeout. Hand-written SVG, log-log axes.

const (
	panelW, panelH = 420, 260
	marginL        = 70
	marginT        = 95
	gapX, gapY     = 90, 80
)

// axis maps a value on a log scale to a pixel range.
type axis struct {
	lo, hi     float64 // values
	from, to   float64 // pixels
	ticks      []float64
	tickLabels []string
}

func (a axis) pos(v float64) float64 {
	v = min(max(v, a.lo), a.hi)
	f := (math.Log10(v) - math.Log10(a.lo)) / (math.Log10(a.hi) - math.Log10(a.lo))
	return a.from + f*(a.to-a.from)
}

// ioColor is the color of an io_timeout's series.
func ioColor(i int) string {
	colors := []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd"}
	return colors[i%len(colors)]
}

func (r *scaleReport) chart() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	geos := r.sc.geos
	w := marginL + 2*panelW + gapX + 40
	h := marginT + len(geos)*panelH + (len(geos)-1)*gapY + 80
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	p(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	p(`<text x="%d" y="24" font-size="16" font-weight="bold">sanlock-msg (solid) and sanlock (dashed) against the highest host id in use</text>`+"\n", marginL)
	// Legend.
	lx := float64(marginL)
	for i, io := range r.sc.ios {
		c := ioColor(i)
		p(`<line x1="%.0f" y1="50" x2="%.0f" y2="50" stroke="%s" stroke-width="2"/><circle cx="%.0f" cy="50" r="3.5" fill="%s"/>`, lx, lx+28, c, lx+14, c)
		p(`<text x="%.0f" y="54">sanlock-msg, io_timeout %d</text>`+"\n", lx+34, io)
		lx += 215
		p(`<line x1="%.0f" y1="50" x2="%.0f" y2="50" stroke="%s" stroke-width="2" stroke-dasharray="6,4"/><rect x="%.0f" y="46.5" width="7" height="7" fill="%s"/>`, lx, lx+28, c, lx+10.5, c)
		p(`<text x="%.0f" y="54">sanlock, io_timeout %d</text>`+"\n", lx+34, io)
		lx += 195
	}
	for gi, g := range geos {
		top := float64(marginT + gi*(panelH+gapY))
		hs := r.highsOf(g)
		xa := func(left float64) axis {
			a := axis{lo: 2, hi: 3000, from: left, to: left + panelW}
			for _, x := range hs {
				a.ticks = append(a.ticks, float64(x))
				a.tickLabels = append(a.tickLabels, fmt.Sprint(x))
			}
			return a
		}
		// Latency panel.
		left := float64(marginL)
		lat := axis{lo: 0.01, hi: 100, from: top + panelH, to: top,
			ticks: []float64{0.01, 0.1, 1, 10, 100}, tickLabels: []string{"10 ms", "0.1 s", "1 s", "10 s", "100 s"}}
		r.frame(&b, xa(left), lat, fmt.Sprintf("%s: cold one-way latency (p50, whisker to p99)", g))
		for _, y := range []struct {
			v    float64
			name string
		}{{0.3, "goal p50 0.3 s"}, {1, "goal p99 1 s"}} {
			yy := lat.pos(y.v)
			p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888" stroke-dasharray="2,3"/>`, left, yy, left+panelW, yy)
			p(`<text x="%.1f" y="%.1f" fill="#666" font-size="10" text-anchor="end">%s</text>`+"\n", left+panelW-4, yy-3, y.name)
		}
		for i, io := range r.sc.ios {
			c := ioColor(i)
			var pts [][2]float64
			for _, hi := range hs {
				x := r.pool(r.sparse, g, io, hi)
				if x == nil || len(x.cold.oneWay) == 0 {
					continue
				}
				xx := xa(left).pos(float64(hi))
				y50, y99 := lat.pos(percentile(x.cold.oneWay, 50)), lat.pos(percentile(x.cold.oneWay, 99))
				p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5"/>`, xx+float64(i)*4-2, y50, xx+float64(i)*4-2, y99, c)
				p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5"/>`+"\n", xx+float64(i)*4-6, y99, xx+float64(i)*4+2, y99, c)
				pts = append(pts, [2]float64{xx, y50})
			}
			polyline(&b, pts, c, false, true)
			// sanlock events: measured at one HIGH, on 512/1M; the same
			// at any host count (a renewal-driven read of the area).
			for _, s := range r.slk {
				if s.io != io || s.events == nil || len(s.events.latency) == 0 {
					continue
				}
				y := lat.pos(percentile(s.events.latency, 50))
				p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2" stroke-dasharray="6,4"/>`, left, y, left+panelW, y, c)
				p(`<rect x="%.1f" y="%.1f" width="7" height="7" fill="%s"/>`, xa(left).pos(float64(s.high))-3.5, y-3.5, c)
				p(`<text x="%.1f" y="%.1f" fill="%s" font-size="10">sanlock events p50, io %d (measured at %s, HIGH %d)</text>`+"\n", left+6, y-4, c, io, s.geo, s.high)
			}
		}
		// Reads panel.
		left2 := float64(marginL + panelW + gapX)
		rd := axis{lo: 1e3, hi: 1e7, from: top + panelH, to: top,
			ticks: []float64{1e3, 1e4, 1e5, 1e6, 1e7}, tickLabels: []string{"1 KB/s", "10 KB/s", "100 KB/s", "1 MB/s", "10 MB/s"}}
		r.frame(&b, xa(left2), rd, fmt.Sprintf("%s: idle reads per host", g))
		for i, io := range r.sc.ios {
			c := ioColor(i)
			var ours, slk [][2]float64
			for _, hi := range hs {
				xx := xa(left2).pos(float64(hi))
				if x := r.pool(r.sparse, g, io, hi); x != nil && len(x.idle.procRead) > 0 {
					ours = append(ours, [2]float64{xx, rd.pos(mean(x.idle.procRead))})
				}
				if s := r.slkFor(g, io, hi); s != nil && s.idle != nil && len(s.idle.procRead) > 0 {
					slk = append(slk, [2]float64{xx, rd.pos(mean(s.idle.procRead))})
				}
			}
			polyline(&b, ours, c, false, true)
			polyline(&b, slk, c, true, false)
		}
	}
	p(`<text x="%d" y="%d" fill="#444" font-size="11">Daemons at host ids 1, 2 and HIGH, so every renewal covers host ids 1..HIGH. Made by msgbench scale (bench/README.md).</text>`+"\n", marginL, h-20)
	p("</svg>\n")
	return b.String()
}

// frame draws a panel's axes, grid and title.
func (r *scaleReport) frame(b *strings.Builder, x, y axis, title string) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	p(`<text x="%.1f" y="%.1f" font-weight="bold">%s</text>`+"\n", x.from, y.to-10, title)
	p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", x.from, y.to, x.to-x.from, y.from-y.to)
	for i, t := range y.ticks {
		yy := y.pos(t)
		p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`, x.from, yy, x.to, yy)
		p(`<text x="%.1f" y="%.1f" text-anchor="end" font-size="10">%s</text>`+"\n", x.from-4, yy+3, y.tickLabels[i])
	}
	for i, t := range x.ticks {
		xx := x.pos(t)
		p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`, xx, y.from, xx, y.to)
		p(`<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10">%s</text>`+"\n", xx, y.from+14, x.tickLabels[i])
	}
	p(`<text x="%.1f" y="%.1f" text-anchor="middle" font-size="11">HIGH (highest host id in use)</text>`+"\n", (x.from+x.to)/2, y.from+30)
}

// polyline draws a series, dashed or not, with circle or square markers.
func polyline(b *strings.Builder, pts [][2]float64, color string, dashed, circles bool) {
	if len(pts) == 0 {
		return
	}
	var s []string
	for _, pt := range pts {
		s = append(s, fmt.Sprintf("%.1f,%.1f", pt[0], pt[1]))
	}
	dash := ""
	if dashed {
		dash = ` stroke-dasharray="6,4"`
	}
	fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(s, " "), color, dash)
	for _, pt := range pts {
		if circles {
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>`, pt[0], pt[1], color)
		} else {
			fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="7" height="7" fill="%s"/>`, pt[0]-3.5, pt[1]-3.5, color)
		}
	}
	b.WriteString("\n")
}
