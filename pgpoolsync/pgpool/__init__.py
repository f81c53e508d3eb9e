"""The pgpool side: the atomic writer, the native PCP client, and the actuator that brings a
running pgpool to the desired state and verifies it. The only users of sockets in pgpoolsync."""
