"""`python -m wireleap_relay.testing [bench [--smoke] ... | abuse ... | socks URL]`: the
local demo network (`make run`), the benchmark (`make bench`), the attack figures (`make
abuse`) or a SOCKS5 entry in front of the relays of a fake contract (socks_entry.py).
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

if sys.argv[1:2] == ["socks"]:
    from wireleap_relay.testing.socks_entry import main

    sys.exit(main(sys.argv[2:]))

from wireleap_relay.testing.devnet import main  # noqa: E402

sys.exit(main())
