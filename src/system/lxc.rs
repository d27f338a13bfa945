//! Deploying a plan on LXC (below).
