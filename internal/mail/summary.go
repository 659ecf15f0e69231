package mail

// Subject is the keys email's subject: Subject, naming the shop when it
// has a name.
func (e KeysEmail) Subject() string {
	if e.Shop.Name == "" {
		return Subject
	}
	return Subject + " from " + e.Shop.Name
}
