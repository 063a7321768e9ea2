from maln.cli import main

raise SystemExit(main())
