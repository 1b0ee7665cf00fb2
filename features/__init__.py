"""Tables and time: the CRM data contract, point-in-time snapshots, labels and features."""
