"""The dispatchers' side: the console socket (snapshot, then live), the desk's HTTP routes (login,
officers), and the audit log of every location a dispatcher read.
"""
