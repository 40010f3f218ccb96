//! The Taobao Open Platform client: signing, OAuth, typed calls, error classes.
