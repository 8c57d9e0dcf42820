"""The localfaas function runtime: a watchdog on waitress with auth built in."""
