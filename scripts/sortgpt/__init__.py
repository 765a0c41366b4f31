"""The sort-grid domain: sorting task data, the sort GPT, training, evaluation, the grid.

Importing the package itself is cheap (no torch): the workflow imports `sortgpt.grid`
while it builds the DAG.
"""
