"""The Cassandra backend of the online store; `session.py` is the only module that imports cassandra-driver."""
