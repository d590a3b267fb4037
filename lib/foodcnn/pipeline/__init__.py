"""Pipeline: the command line, the catalogue through papermill (locally or on Ray), rendering the report."""
