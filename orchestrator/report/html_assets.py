"""The HTML report's page template, style sheet and the few lines of script that pick the rank."""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style></head>
<body><main>
{body}
<footer>stop-and-go · generated {generated} · self-contained: no network needed</footer>
</main><script>{js}</script></body></html>
"""

CSS = """
:root { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1f2937; }
body { margin: 0; background: #f8fafc; }
main { max-width: 980px; margin: 0 auto; padding: 24px; }
header { border-radius: 10px; padding: 18px 22px; color: #fff; position: relative; }
header.pass { background: linear-gradient(135deg, #15803d, #16a34a); }
header.fail { background: linear-gradient(135deg, #b91c1c, #dc2626); }
header.error { background: linear-gradient(135deg, #b45309, #d97706); }
header h1 { margin: 0 0 6px; font-size: 20px; font-weight: 600; opacity: .9; }
header .badge { float: right; font-weight: 800; letter-spacing: .06em; font-size: 22px;
  border: 2px solid rgba(255,255,255,.8); border-radius: 8px; padding: 6px 14px; }
header .message { margin: 4px 0 12px; font-size: 15px; word-break: break-word; }
header .code { background: rgba(0,0,0,.2); border-radius: 4px; padding: 1px 6px; font-size: 13px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; margin: 0; font-size: 13px; }
dl.facts dt { opacity: .85; } dl.facts dd { margin: 0; word-break: break-all; font-family: ui-monospace, monospace; }
section { background: #fff; border: 1px solid #e2e8f0; border-radius: 10px; padding: 14px 20px; margin-top: 18px; }
h2 { font-size: 17px; margin: 2px 0 10px; }
h3 { font-size: 15px; margin: 0 0 4px; font-family: ui-monospace, monospace; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eef2f7; }
td { font-family: ui-monospace, monospace; word-break: break-all; }
th { color: #64748b; font-weight: 600; }
tr.mismatch td, tr.nondeterministic td { background: #fef2f2; }
.chip { display: inline-block; border-radius: 999px; padding: 1px 9px; font-size: 12px; font-weight: 600;
  font-family: system-ui, sans-serif; background: #f1f5f9; color: #475569; white-space: nowrap; }
.chip.ok { background: #dcfce7; color: #166534; }
.chip.mismatch, .chip.nondeterministic { background: #fee2e2; color: #991b1b; }
.hint { color: #64748b; font-size: 12px; margin: 0 0 8px; }
.timeline { display: flex; height: 30px; border-radius: 6px; overflow: hidden; margin-bottom: 10px; }
.timeline .bar { position: relative; color: #fff; font-size: 12px; display: flex; align-items: center;
  padding-left: 8px; white-space: nowrap; overflow: hidden; border-right: 2px solid #fff; }
.timeline .stop { background: #2563eb; } .timeline .go { background: #ea580c; }
.timeline .continuous { background: #94a3b8; } .timeline .go.killed { background: #9a3412; }
.timeline .kill-mark { position: absolute; right: 6px; font-weight: 800; color: #fee2e2; }
ul.failures { font-family: ui-monospace, monospace; font-size: 12px; padding-left: 18px; margin: 0; }
ul.failures li { margin: 2px 0; word-break: break-word; }
ul.failures summary { cursor: pointer; color: #475569; font-family: system-ui, sans-serif; }
ul.failures ul { padding-left: 0; list-style: none; }
.ranks { font-size: 13px; margin-bottom: 8px; }
.ranks button { border: 1px solid #cbd5e1; background: #fff; border-radius: 6px; padding: 3px 10px;
  margin-right: 4px; cursor: pointer; font-size: 13px; }
.ranks button.active { background: #1e293b; color: #fff; border-color: #1e293b; }
.ranks button.bad::after { content: " ●"; color: #dc2626; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 16px; font-size: 12px; color: #475569; margin-bottom: 6px; }
.legend i { display: inline-block; width: 22px; height: 3px; vertical-align: middle; margin-right: 6px;
  border-radius: 2px; }
.legend b { margin-right: 5px; }
article.metric { border-top: 1px solid #eef2f7; padding-top: 12px; margin-top: 12px; }
p.divergence { font-family: ui-monospace, monospace; font-size: 12px; color: #991b1b; margin: 2px 0 4px;
  word-break: break-word; }
.rank-view { display: none; } .rank-view.active { display: block; }
svg { width: 100%; height: auto; display: block; }
section.root-cause { border-left: 5px solid #dc2626; }
section.root-cause .detail { font-family: ui-monospace, monospace; font-size: 13px; color: #991b1b; margin: 0 0 6px;
  word-break: break-word; }
section.root-cause dl { display: grid; grid-template-columns: max-content 1fr; gap: 3px 12px; margin: 0 0 4px;
  font-size: 14px; } section.root-cause dt { font-weight: 700; } section.root-cause dd { margin: 0; }
.resume-grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 10px; }
.resume-grid figure { margin: 0; } .resume-grid figcaption { font-size: 12px; color: #475569; }
svg .plot { fill: #fcfdfe; stroke: #e2e8f0; }
svg .grid { stroke: #eef2f7; }
svg .tick { font-size: 11px; fill: #64748b; }
svg .axis { font-size: 12px; fill: #334155; font-weight: 600; }
svg .kill-line { stroke: #dc2626; stroke-dasharray: 5 4; stroke-width: 1.5; }
svg .kill-label { font-size: 11px; fill: #dc2626; font-weight: 600; }
svg .kill-x { font-size: 15px; fill: #dc2626; font-weight: 800; }
svg .resume-label { font-size: 11px; fill: #15803d; font-weight: 600; }
svg .saved-mark { fill: #fff; stroke: #2563eb; stroke-width: 2.5; }
svg .resume-mark { fill: #fff; stroke: #16a34a; stroke-width: 2.5; }
svg .diverge-band { fill: #dc2626; opacity: .14; }
svg .diverge-ring { fill: none; stroke: #dc2626; stroke-width: 2.5; }
svg .diverge-label { font-size: 12px; fill: #b91c1c; font-weight: 700; }
svg text { paint-order: stroke; stroke: #fff; stroke-width: 3px; stroke-linejoin: round; }
svg .diverge-box { fill: none; stroke: #dc2626; stroke-width: 2; }
svg .resume-cell { stroke: #16a34a; stroke-width: 2; }
footer { color: #94a3b8; font-size: 12px; text-align: center; margin: 18px 0 4px; }
"""

# Picks the rank shown by every chart; without JS, rank 0 is shown.
JS = """
document.querySelectorAll('.ranks button').forEach(function (button) {
  button.addEventListener('click', function () {
    var rank = button.getAttribute('data-rank');
    document.querySelectorAll('.ranks button').forEach(function (b) {
      b.classList.toggle('active', b === button);
    });
    document.querySelectorAll('.rank-view').forEach(function (view) {
      view.classList.toggle('active', view.getAttribute('data-rank') === rank);
    });
  });
});
"""
