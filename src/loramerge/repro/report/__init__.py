"""Tables and figures of the paper from selection results and analysis CSVs, written reproducibly and atomically.

`loramerge.repro.report.tables` builds DataFrames (Tables 1–3 and 7) and writes CSV + Markdown pairs;
`loramerge.repro.report.figures` draws Figures 1–3 as PNG + PDF, both through `loramerge.atomic`.
"""
