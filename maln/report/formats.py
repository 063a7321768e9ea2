"""The formats every table is written in: CSV (numbers), Markdown, LaTeX and a standalone HTML
page (for `snakemake --report`)."""

from __future__ import annotations

import math

from maln import io

NA = "n/a"


def fmt(mean, std, digits=2) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return NA
    return f"{mean:.{digits}f}" if std is None or math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _csv(rows: list[dict]) -> str:
    import csv
    import io as _io

    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) and not math.isnan(v) else ("" if isinstance(v, float) else v))
                    for k, v in r.items()})
    return buf.getvalue()


def _markdown(header: list[str], body: list[list[str]], align=None) -> str:
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def _latex(header: list[str], body: list[list[str]], caption: str) -> str:
    def esc(s):
        return (s.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("%", "\\%").replace("&", "\\&")
                .replace("±", "$\\pm$").replace("†", "$^\\dagger$").replace("Δ", "$\\Delta$"))

    cols = "l" * 2 + "r" * (len(header) - 2)
    lines = ["\\begin{table}[t]", "\\centering", f"\\caption{{{esc(caption)}}}", f"\\begin{{tabular}}{{{cols}}}",
             "\\toprule", " & ".join(map(esc, header)) + " \\\\", "\\midrule"]
    lines += [" & ".join(map(esc, row)) + " \\\\" for row in body]
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def _html(header: list[str], body: list[list[str]], caption: str) -> str:
    """A standalone page, for `snakemake --report` (which shows HTML inline, CSV only as a download)."""
    from html import escape

    rows = "\n".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><style>
body {{ font-family: sans-serif; font-size: 14px; margin: 1em; }}
table {{ border-collapse: collapse; }} caption {{ text-align: left; margin-bottom: .6em; max-width: 60em; }}
th, td {{ padding: .25em .8em; border-bottom: 1px solid #ddd; text-align: right; }}
th:nth-child(-n+2), td:nth-child(-n+2) {{ text-align: left; }} th {{ border-bottom: 2px solid #333; }}
</style></head><body><table>
<caption>{escape(caption)}</caption>
<tr>{"".join(f"<th>{escape(h)}</th>" for h in header)}</tr>
{rows}
</table></body></html>
"""



def write(out, name, rows, header, body, caption):
    """`name`.csv from the rows, .md/.tex/.html from the header and formatted body, captioned."""
    io.write_text(out / f"{name}.csv", _csv(rows))
    io.write_text(out / f"{name}.md", f"{caption}\n\n" + _markdown(header, body))
    io.write_text(out / f"{name}.tex", _latex(header, body, caption))
    io.write_text(out / f"{name}.html", _html(header, body, caption))
