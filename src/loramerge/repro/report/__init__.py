"""Tables and figures of the paper from search results and analysis CSVs, written reproducibly and atomically.

- :mod:`.naming`: display names of methods (from the method catalogue) and tasks, the method order, settings as text.
- :mod:`.rows`: rows of ours, the paper's and their difference; the columns and notes tables share.
- one module per table: :mod:`.table3` (Table 3), :mod:`.joint` (Tables 5 and 9), :mod:`.alpha_sweep` (Tables 7 and 8),
  :mod:`.energy` (Tables 1 and 2), :mod:`.finetuned` (the fine-tuned adapters alone).
- :mod:`.render`: CSV, Markdown and LaTeX text, and :func:`~.render.write_table` for the three files.
- :mod:`.figures`: Figures 1–3 and Table 8's figure as PNG + PDF. :mod:`.paper`: the paper's published tables.

The tables read the typed search results of :mod:`loramerge.repro.search` (``Selection``, ``JointSelection``).
"""
