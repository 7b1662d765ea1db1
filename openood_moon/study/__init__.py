"""The comparison / study runner: a grid of paired-seed runs, a tidy CSV, paired intervals, plots."""
