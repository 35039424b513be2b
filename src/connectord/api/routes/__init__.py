"""The REST routes: thin translations between HTTP and facade calls."""
