"""Pure Citrix knowledge: version strings, the release catalog and the update-deadline policy.

Nothing in this package touches the network. It reads only the bundled ``releases.yaml`` and
documents handed to it, so every rule is unit-tested without a License Server.
"""
