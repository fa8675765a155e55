"""Servers: the public :class:`~ahtwist.servers.base.Server` contract and what
every server shares (peer facts, the file dispatch, reply envelopes)."""
