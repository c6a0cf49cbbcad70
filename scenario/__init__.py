"""The built-in scenario: Taiyuan's sources simulated (clean nights and their messy variants).

It writes files as street offices, canteens and assistance points would; it is not ingestion."""
