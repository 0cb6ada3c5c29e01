fn main() {
    print!("{}", herald_api::crd_yaml());
}
