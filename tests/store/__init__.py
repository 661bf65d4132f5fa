"""Tests of corral.store: schema, migrations, bulk writes."""
