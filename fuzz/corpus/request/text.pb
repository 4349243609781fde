hello world"
333?fff?*
0