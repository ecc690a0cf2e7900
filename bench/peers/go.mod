module github.com/roamsession/roam/bench/peers

go 1.26.0

require github.com/roamsession/roam v0.0.0

require github.com/alexedwards/scs/v2 v2.9.0

replace github.com/roamsession/roam => ../..
