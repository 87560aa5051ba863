from eventmon.cli import main

raise SystemExit(main())
