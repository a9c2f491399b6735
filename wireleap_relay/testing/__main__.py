"""`python -m wireleap_relay.testing [bench [--smoke] ... | abuse ...]`: the local demo
network (`make run`), the benchmark (`make bench`) or the attack figures (`make abuse`).
gevent patches here, at the entry point, before anything imports socket."""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

if sys.argv[1:2] == ["bench"]:
    from wireleap_relay.testing.bench import main

    sys.exit(main(sys.argv[2:]))
if sys.argv[1:2] == ["abuse"]:
    from wireleap_relay.testing.abuse import main

    sys.exit(main(sys.argv[2:]))

from wireleap_relay.testing.devnet import main  # noqa: E402

sys.exit(main())
