"""`python -m wireleap_relay.testing [bench]`: the local demo network (`make run`) or the
benchmark (`make bench`). gevent patches here, at the entry point, before anything imports
socket."""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

if sys.argv[1:] == ["bench"]:
    from wireleap_relay.testing.bench import main
else:
    from wireleap_relay.testing.devnet import main

sys.exit(main())
