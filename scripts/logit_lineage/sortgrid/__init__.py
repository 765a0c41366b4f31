"""The sort-grid chain: sorting task data, the sort GPT, training, evaluation, the grid.

Importing the package itself is cheap (no torch): the workflow imports `logit_lineage.sortgrid.grid`
while it builds the DAG.
"""
