"""A fleet of simulated phones and consoles that talks to a running server over its sockets and HTTP."""
