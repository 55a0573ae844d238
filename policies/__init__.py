"""The platform's CrossGuard policies. `POLICIES` is the list the pack, the offline check and the tests share."""

POLICIES: list = []
