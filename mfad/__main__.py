from mfad.cli import main

raise SystemExit(main())
