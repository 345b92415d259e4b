"""The Redis job protocol: keys, the job record, the Lua scripts, shard sizing, and the server's and the worker's halves."""
