"""`python -m foodcnn`: the command line (foodcnn.orchestration.cli)."""

from foodcnn.orchestration.cli import main

raise SystemExit(main())
