"""Reports: leaderboard, tables, figures and HTML, regenerated from result files only.

load.py reads and validates result files; reported.py the papers' numbers; aggregate.py turns
results into per-(task@version, profile) tables; leaderboard.py, latex.py, figures.py and html.py
render them. Nothing here trains or samples.
"""
