from mfad_client.cli import main

raise SystemExit(main())
