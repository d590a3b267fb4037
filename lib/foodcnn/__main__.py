"""`python -m foodcnn`: the command line (foodcnn.pipeline.cli)."""

from .pipeline.cli import main

raise SystemExit(main())
