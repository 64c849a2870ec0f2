"""Reports: plots and the pipeline's Markdown report."""
