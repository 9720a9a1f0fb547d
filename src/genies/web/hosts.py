"""The host names the browser answers to (a DNS-rebinding guard: anything else is refused)."""

LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
