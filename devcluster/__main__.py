from devcluster import demo

raise SystemExit(demo())
