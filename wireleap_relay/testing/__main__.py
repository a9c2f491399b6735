"""`python -m wireleap_relay.testing`: the local demo network (`make run`). gevent patches
here, at the entry point, before anything imports socket."""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

from wireleap_relay.testing.devnet import main  # noqa: E402

sys.exit(main())
