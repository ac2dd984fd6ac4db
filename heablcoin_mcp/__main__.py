from heablcoin_mcp.cli import main

raise SystemExit(main())
