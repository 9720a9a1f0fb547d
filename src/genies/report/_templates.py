"""Jinja2 templates of ``genies report`` (kept in Python so they ship without package-data rules).

HTML: autoescape on; the only non-text values are PNG data URIs built by ``genies.report.html``.
Markdown: every data string goes through the ``md`` filter (HTML-escaped, Markdown syntax inert).
"""

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:12px}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.mean td{font-weight:600;background:#f5f8fb}
.ci{color:#777;font-size:11px}.sig{color:#b35900;font-weight:600}
.note{color:#8a5a00}figure{margin:1em 0}figcaption{color:#555;font-size:12px}
img{max-width:100%}code{font-size:12px;word-break:break-all}
"""

REPORT_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ d.title }}</title><style>{{ css }}</style></head>
<body>
<h1>{{ d.title }}</h1>
<p>Written {{ d.created }} by <code>genies report</code> from {{ d.results|length }} result
file{{ "s" if d.results|length != 1 }}{% if d.paper_model %}, beside the paper's numbers for
<b>{{ d.paper_model }}</b>{% endif %}. DE = differential elicitation = (generalization − baseline) /
target-tuned capability; [a, b] = 95% bootstrap CI.</p>
{% for n in d.notes %}<p class="note">{{ n }}</p>{% endfor %}

<h2 id="table">Suite table</h2>
<table>
<thead><tr>{% for c in d.table.columns %}<th{% if c.numeric %} class="n"{% endif %} title="{{ c.title }}">{{ c.header }}</th>{% endfor %}<th>TTC by</th></tr></thead>
<tbody>
{% for r in d.table.rows %}<tr><td>{{ r.intervention }}</td><td>{{ r.model }}</td><td>{{ r.suite }}</td>
<td>{{ r.shift }}{% if r.reference != r.target %} <span class="ci">@{{ r.reference }}</span>{% endif %}</td><td>{{ r.category }}</td>
{% for c in d.table.columns if c.numeric %}<td class="n">{{ r.values[c.key]|num }}{% if c.key in r.cis %}<br><span class="ci">{{ r.cis[c.key]|ci }}</span>{% endif %}</td>{% endfor %}
<td>{{ r.ttc_by or "" }}</td></tr>
{% endfor %}
</tbody>
<tbody>
{% for m in d.table.category_means %}<tr class="mean"><td colspan="5">mean: {{ m.label }} ({{ m.n }} shift{{ "s" if m.n != 1 }})</td>
{% for c in d.table.columns if c.numeric %}<td class="n">{{ m.values[c.key]|num }}</td>{% endfor %}<td></td></tr>
{% endfor %}
{% for m in d.table.overall_means %}<tr class="mean"><td colspan="5">suite mean: {{ m.label }} ({{ m.n }} shift{{ "s" if m.n != 1 }})</td>
{% for c in d.table.columns if c.numeric %}<td class="n">{{ m.values[c.key]|num }}</td>{% endfor %}<td></td></tr>
{% endfor %}
</tbody></table>

{% if d.paper %}<h2 id="paper">Beside the paper ({{ d.paper_model }})</h2>
<table id="paper-table"><thead><tr><th>result</th><th>shift</th><th class="n">gen acc</th><th class="n">paper gen acc</th>
<th class="n">DE</th><th class="n">paper DE</th></tr></thead><tbody>
{% for p in d.paper %}<tr><td>{{ p.result }}</td><td>{{ p.shift }}</td><td class="n">{{ p.gen|num }}</td><td class="n">{{ p.paper_gen|num }}</td>
<td class="n">{{ p.de|num }}</td><td class="n">{{ p.paper_de|num }}</td></tr>
{% endfor %}</tbody></table>{% endif %}

<h2 id="plots">Plots</h2>
{% for f in d.figures %}<figure id="fig-{{ f.name }}"><h3>{{ f.title }}</h3>
<img alt="{{ f.title }}" src="{{ f.data_uri }}">
{% if f.caption %}<figcaption>{{ f.caption }}</figcaption>{% endif %}</figure>
{% endfor %}

{% if d.comparisons %}<h2 id="comparisons">Paired comparisons</h2>
{% for c in d.comparisons %}
<h3>B = {{ c.b.label }} vs A = {{ c.a.label }}</h3>
<p>A: <code>{{ c.a.path }}</code><br>B: <code>{{ c.b.path }}</code><br>
Differences are B − A. CI: {{ c.methods.ci }}. p (accuracy): {{ c.methods.accuracy_p }}.
p (DE): {{ c.methods.de_p }}. Holm: {{ c.methods.multiple_testing }}.</p>
<table><thead><tr><th>shift</th><th class="n">pairs</th><th class="n">acc A</th><th class="n">acc B</th>
<th class="n">Δ acc</th><th class="n">95% CI</th><th class="n">p</th><th class="n">Holm p</th>
<th class="n">DE A</th><th class="n">DE B</th><th class="n">Δ DE</th><th class="n">95% CI</th><th class="n">p</th><th class="n">Holm p</th></tr></thead>
<tbody>{% for s in c.shifts %}<tr><td>{{ s.shift }}</td><td class="n">{{ s.n_pairs }}</td>
<td class="n">{{ s.acc_a|num }}</td><td class="n">{{ s.acc_b|num }}</td><td class="n">{{ s.acc_diff|num(true) }}</td>
<td class="n">{{ s.acc_ci|ci }}</td><td class="n">{{ s.acc_p|pv }}</td>
<td class="n{% if s.acc_p_holm < 0.05 %} sig{% endif %}">{{ s.acc_p_holm|pv }}</td>
<td class="n">{{ s.de_a|num }}</td><td class="n">{{ s.de_b|num }}</td><td class="n">{{ s.de_diff|num(true) }}</td>
<td class="n">{{ s.de_ci|ci }}</td><td class="n">{{ s.de_p|pv }}</td>
<td class="n{% if s.de_p_holm is not none and s.de_p_holm < 0.05 %} sig{% endif %}">{{ s.de_p_holm|pv }}</td></tr>
{% endfor %}<tr class="mean"><td colspan="4">mean over {{ c.shifts|length }} shifts</td>
<td class="n">{{ c.mean_acc_diff|num(true) }}</td><td class="n">{{ c.mean_acc_ci|ci }}</td><td></td><td></td><td></td><td></td>
<td class="n">{{ c.mean_de_diff|num(true) }}</td><td class="n">{{ c.mean_de_ci|ci }}</td><td></td><td></td></tr>
</tbody></table>
{% if c.only_a %}<p class="note">only in A (not compared): {{ c.only_a|join(", ") }}</p>{% endif %}
{% if c.only_b %}<p class="note">only in B (not compared): {{ c.only_b|join(", ") }}</p>{% endif %}
{% endfor %}{% endif %}

<h2 id="metadata">Run metadata</h2>
{% for m in d.metadata %}<table>
{% for k, v in m.items() %}<tr><th>{{ k }}</th><td><code>{{ v }}</code></td></tr>{% endfor %}
</table>{% endfor %}
</body></html>
"""

REPORT_MD = """# {{ d.title|md }}

Written {{ d.created }} by `genies report` from {{ d.results|length }} result file(s){% if d.paper_model %}, beside the paper's numbers for **{{ d.paper_model|md }}**{% endif %}.
DE = differential elicitation = (generalization − baseline) / target-tuned capability; [a, b] = 95% bootstrap CI.
{% for n in d.notes %}
> {{ n|md }}
{% endfor %}

## Suite table

| {% for c in d.table.columns %}{{ c.header|md }} | {% endfor %}TTC by |
|{% for c in d.table.columns %}{{ "---:" if c.numeric else "---" }}|{% endfor %}---|
{% for r in d.table.rows %}| {{ r.intervention|md }} | {{ r.model|md }} | {{ r.suite|md }} | {{ r.shift|md }} | {{ r.category|md }} | {% for c in d.table.columns if c.numeric %}{{ r.values[c.key]|num }}{% if c.key in r.cis %} {{ r.cis[c.key]|ci }}{% endif %} | {% endfor %}{{ (r.ttc_by or "")|md }} |
{% endfor %}{% for m in d.table.category_means %}| **mean: {{ m.label|md }}** ({{ m.n }}) | | | | | {% for c in d.table.columns if c.numeric %}{{ m.values[c.key]|num }} | {% endfor %} |
{% endfor %}{% for m in d.table.overall_means %}| **suite mean: {{ m.label|md }}** ({{ m.n }}) | | | | | {% for c in d.table.columns if c.numeric %}{{ m.values[c.key]|num }} | {% endfor %} |
{% endfor %}

{% if d.paper %}## Beside the paper ({{ d.paper_model|md }})

| result | shift | gen acc | paper gen acc | DE | paper DE |
|---|---|---:|---:|---:|---:|
{% for p in d.paper %}| {{ p.result|md }} | {{ p.shift|md }} | {{ p.gen|num }} | {{ p.paper_gen|num }} | {{ p.de|num }} | {{ p.paper_de|num }} |
{% endfor %}
{% endif %}## Plots
{% for f in d.figures %}
### {{ f.title|md }}

![{{ f.title|md }}]({{ images[f.name] }})
{% if f.caption %}
{{ f.caption|md }}
{% endif %}{% endfor %}
{% if d.comparisons %}
## Paired comparisons
{% for c in d.comparisons %}
### B = {{ c.b.label|md }} vs A = {{ c.a.label|md }}

Differences are B − A. CI: {{ c.methods.ci|md }}. p (accuracy): {{ c.methods.accuracy_p|md }}. p (DE): {{ c.methods.de_p|md }}. Holm: {{ c.methods.multiple_testing|md }}.

| shift | pairs | acc A | acc B | Δ acc | 95% CI | p | Holm p | DE A | DE B | Δ DE | 95% CI | p | Holm p |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{% for s in c.shifts %}| {{ s.shift|md }} | {{ s.n_pairs }} | {{ s.acc_a|num }} | {{ s.acc_b|num }} | {{ s.acc_diff|num(true) }} | {{ s.acc_ci|ci }} | {{ s.acc_p|pv }} | {{ s.acc_p_holm|pv }} | {{ s.de_a|num }} | {{ s.de_b|num }} | {{ s.de_diff|num(true) }} | {{ s.de_ci|ci }} | {{ s.de_p|pv }} | {{ s.de_p_holm|pv }} |
{% endfor %}| **mean over {{ c.shifts|length }} shifts** | | | | {{ c.mean_acc_diff|num(true) }} | {{ c.mean_acc_ci|ci }} | | | | | {{ c.mean_de_diff|num(true) }} | {{ c.mean_de_ci|ci }} | | |
{% endfor %}{% endif %}
## Run metadata
{% for m in d.metadata %}
| field | value |
|---|---|
{% for k, v in m.items() %}| {{ k|md }} | {{ v|md }} |
{% endfor %}{% endfor %}
"""

TEMPLATES = {"report.html": REPORT_HTML, "report.md": REPORT_MD}
